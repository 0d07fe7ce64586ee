//! Private keys: where a `dkim_keys` row's key is read from, parsing it, and the cache that
//! keeps parsed keys until their file changes.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use base64::Engine;
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::Writable;
use postbay_store::DkimKeyRow;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::{KeyError, KeySource};

/// Parsed keys kept at most; beyond it the least recently used one is dropped.
pub const KEY_CACHE_MAX: usize = 1024;

/// A parsed signing key, shared by the cache and the signers built from it. `Debug` shows
/// the algorithm only.
#[derive(Clone)]
pub(crate) struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

impl From<DkimKey> for SharedKey {
    fn from(key: DkimKey) -> SharedKey {
        SharedKey(Arc::new(key))
    }
}

#[cfg(test)]
impl SharedKey {
    pub(crate) fn same_as(&self, other: &SharedKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn inner(&self) -> &DkimKey {
        &self.0
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedKey({})", algorithm_name(self.algorithm()))
    }
}

/// `a=` spelling, as the `dkim_keys.algorithm` column has it too.
pub(crate) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

/// What identifies one version of a key file: a replaced file (a new `..data` of a Secret
/// volume, a rename over it, a rewrite) changes at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileStamp {
    fn of(path: &Path, meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        }
    }
}

struct CachedKey {
    stamp: FileStamp,
    /// The row's `algorithm` and `public_key` the key was compared with (a changed row is
    /// compared again, so its warning is current).
    row: (String, String),
    key: SharedKey,
    used: Instant,
}

/// Parsed keys by (domain, selector).
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<(String, String), CachedKey>>,
}

impl KeyCache {
    /// The key for `row`: from the cache when its file is unchanged, else read, parsed and
    /// checked against the row. Blocking (file system, RSA parsing).
    pub(crate) fn key_for(
        &self,
        source: &KeySource,
        row: &DkimKeyRow,
    ) -> Result<SharedKey, KeyError> {
        let path = key_path(source, row)?;
        let meta = std::fs::metadata(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let stamp = FileStamp::of(&path, &meta);
        let id = (row.domain.clone(), row.selector.clone());
        let row_facts = (row.algorithm.clone(), row.public_key.clone());
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = entries.get_mut(&id) {
                if hit.stamp == stamp && hit.row == row_facts {
                    hit.used = Instant::now();
                    return Ok(hit.key.clone());
                }
            }
        }
        let pem = std::fs::read(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let key = parse_pem(&pem)?;
        match mismatch(&key, row) {
            None => tracing::info!(
                domain = %row.domain,
                selector = %row.selector,
                path = %path.display(),
                "DKIM key loaded"
            ),
            Some(problem) => tracing::warn!(
                domain = %row.domain,
                selector = %row.selector,
                path = %path.display(),
                problem,
                "DKIM key loaded, but signatures will only verify against the file's key"
            ),
        }
        let key = SharedKey::from(key);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= KEY_CACHE_MAX && !entries.contains_key(&id) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            id,
            CachedKey {
                stamp,
                row: row_facts,
                key: key.clone(),
                used: Instant::now(),
            },
        );
        Ok(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Where the row's private key is read from: `<keys_dir>/<domain>.<selector>.key` when that
/// file exists (the operator's mirror Secret, mounted into the smtp pods), else the
/// `file:PATH` of the row. A `secret:` reference is only readable through the mounted
/// directory.
pub(crate) fn key_path(source: &KeySource, row: &DkimKeyRow) -> Result<PathBuf, KeyError> {
    let mounted = match &source.keys_dir {
        Some(dir) => {
            let name = mounted_file_name(&row.domain, &row.selector)?;
            let path = dir.join(name);
            match std::fs::metadata(&path) {
                Ok(_) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(path),
                Err(source) => return Err(KeyError::Io { path, source }),
            }
        }
        None => None,
    };
    if let Some(path) = row.private_key_ref.strip_prefix("file:") {
        return Ok(PathBuf::from(path));
    }
    if row.private_key_ref.starts_with("secret:") {
        return Err(KeyError::SecretNotMounted {
            reference: row.private_key_ref.clone(),
            expected: mounted,
        });
    }
    Err(KeyError::UnknownReference(row.private_key_ref.clone()))
}

/// `<domain>.<selector>.key`, refusing names that would leave the directory.
pub fn mounted_file_name(domain: &str, selector: &str) -> Result<String, KeyError> {
    let name = format!("{}.{selector}.key", domain.to_ascii_lowercase());
    let bad = |s: &str| s.is_empty() || s.contains(['/', '\\', '\0']) || s.starts_with('.');
    if bad(domain) || bad(selector) {
        return Err(KeyError::BadName(name));
    }
    Ok(name)
}

/// Reads a PEM private key in the formats postbay-reconcile accepts: PKCS#8 (`PRIVATE KEY`,
/// Ed25519 or RSA) or PKCS#1 (`RSA PRIVATE KEY`).
pub(crate) fn parse_pem(pem: &[u8]) -> Result<DkimKey, KeyError> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::Unreadable)?;
    match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            // ring accepts PKCS#8 v1 (openssl) and v2 (ed25519-dalek, with the public key).
            if let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                return Ok(DkimKey::Ed25519(key));
            }
            rsa(PrivateKeyDer::Pkcs8(pkcs8))
        }
        PrivateKeyDer::Pkcs1(pkcs1) => rsa(PrivateKeyDer::Pkcs1(pkcs1)),
        _ => Err(KeyError::Unreadable),
    }
}

fn rsa(der: PrivateKeyDer<'_>) -> Result<DkimKey, KeyError> {
    RsaKey::<Sha256>::from_key_der(der)
        .map(DkimKey::Rsa)
        .map_err(|e| KeyError::Rejected(e.to_string()))
}

/// Why the key does not match its row (and so what DNS publishes), if it does not. Only
/// logged: the file is what signs, as in Rspamd, and during a rotation the mounted Secret
/// and the row change at different moments while resolvers may still hold either record;
/// refusing to sign would fail every verifier instead of some.
fn mismatch(key: &DkimKey, row: &DkimKeyRow) -> Option<String> {
    let found = algorithm_name(key.algorithm());
    if !row.algorithm.eq_ignore_ascii_case(found) {
        return Some(format!(
            "the row says {} but the file holds an {found} key",
            row.algorithm
        ));
    }
    let published = base64::engine::general_purpose::STANDARD
        .decode(row.public_key.trim())
        .unwrap_or_default();
    let matches = match key {
        // p= is the SubjectPublicKeyInfo (RFC 6376 section 3.6.1), whose BIT STRING ends
        // with the PKCS#1 RSAPublicKey ring gives us; a bare PKCS#1 key matches too.
        DkimKey::Rsa(rsa) => {
            let pkcs1 = rsa.public_key();
            !pkcs1.is_empty() && published.ends_with(&pkcs1)
        }
        // RFC 8463 section 4.2: the raw 32-byte public key.
        DkimKey::Ed25519(ed) => published == ed.public_key(),
    };
    (!matches)
        .then(|| "the key file is not the key whose public half the row publishes".to_string())
}
