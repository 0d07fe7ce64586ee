//! DKIM signing of submitted mail (RFC 6376), what Rspamd's `dkim_signing` does in the
//! classic stack: the SMTP submission path calls [`Signer::sign`] just before it queues a
//! message and prepends the returned header fields.
//!
//! Every enabled `dkim_keys` row of the author's domain signs, so a domain with an RSA and
//! an Ed25519 key gets both signatures (RFC 8463): a verifier that does not know Ed25519
//! fails that signature alone and still checks the RSA one (RFC 6376 section 6.1.1).
//! Canonicalisation is relaxed/relaxed (section 3.4); no `l=` (a body length lets anyone
//! append content, section 8.2) and no `x=`. The header list and its
//! oversigning are in [`headers`].
//!
//! Keys change without a restart: rows are re-read after [`ROW_TTL`], key files whenever
//! their size, modification time or inode changes, and parsed keys are cached otherwise
//! (parsing an RSA key costs far more than signing with it).

pub mod headers;
mod keys;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postbay_store::{DkimKeyRow, Store};

pub use keys::{mounted_file_name, KEY_CACHE_MAX};

/// How long a domain's key rows are trusted before the store is asked again.
pub const ROW_TTL: Duration = Duration::from_secs(5);
/// Domains whose rows are cached at most.
pub const ROW_CACHE_MAX: usize = 1024;

/// Where private keys are read from besides the `file:` paths of the rows.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// The operator's key Secret mounted as a directory: `<domain>.<selector>.key` (PEM)
    /// per key. Takes precedence over the row's reference, and is the only way to read a
    /// `secret:` reference.
    pub keys_dir: Option<PathBuf>,
}

/// Why a message could not be signed at all.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("reading the DKIM keys of {domain}: {source}")]
    Store {
        domain: String,
        #[source]
        source: postbay_store::Error,
    },
    /// RFC 6376 section 5.4: the From field must be signed, so there must be one.
    #[error("the message has no From header field")]
    NoFrom,
    #[error("the signing task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Why one key was not used (it is skipped, the domain's other keys still sign). Never
/// carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{reference} is a Kubernetes Secret, and {}", match .expected {
        Some(path) => format!("the mounted key file {} does not exist", path.display()),
        None => "no key directory (keys_dir) is configured".to_string(),
    })]
    SecretNotMounted {
        reference: String,
        expected: Option<PathBuf>,
    },
    #[error("private key reference {0:?} is neither file:PATH nor secret:NAMESPACE/NAME/KEY")]
    UnknownReference(String),
    #[error("{0:?} is not a usable key file name")]
    BadName(String),
    #[error("the private key is neither a PKCS#8 RSA or Ed25519 key nor a PKCS#1 RSA key in PEM")]
    Unreadable,
    /// ring refused the RSA key (it signs with 2048 to 4096 bit keys only).
    #[error("the RSA key was refused: {0} (keys of 2048 to 4096 bits are supported)")]
    Rejected(String),
    #[error("signing failed: {0}")]
    Sign(#[source] mail_auth::Error),
}

/// One signature that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: &'static str,
}

/// A key of the domain that did not sign, and why.
#[derive(Debug)]
pub struct SkippedKey {
    pub selector: String,
    pub error: KeyError,
}

/// What [`Signer::sign`] produced.
#[derive(Debug)]
pub struct Signed {
    /// The `DKIM-Signature` fields to prepend to the message, each folded and
    /// CRLF-terminated; RSA first, for verifiers that only look at the top one. Empty when
    /// unsigned.
    pub header: Vec<u8>,
    /// The signatures in `header`, in order.
    pub signatures: Vec<Signature>,
    /// Enabled keys that could not sign (already logged as warnings).
    pub skipped: Vec<SkippedKey>,
}

/// Why a message went out unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    /// The domain has no enabled key.
    NoKey,
    /// It has keys, but none could sign (see [`Signed::skipped`]).
    NoUsableKey,
}

impl Signed {
    /// `None` when at least one signature was made.
    pub fn unsigned(&self) -> Option<Unsigned> {
        match (self.signatures.is_empty(), self.skipped.is_empty()) {
            (false, _) => None,
            (true, true) => Some(Unsigned::NoKey),
            (true, false) => Some(Unsigned::NoUsableKey),
        }
    }
}

/// Signs messages with the directory's keys; cheap to clone, one per process is enough.
#[derive(Clone)]
pub struct Signer {
    inner: Arc<Inner>,
}

/// A domain's enabled rows and when they were read.
type CachedRows = (Instant, Arc<[DkimKeyRow]>);

struct Inner {
    store: Store,
    source: KeySource,
    row_ttl: Duration,
    rows: Mutex<HashMap<String, CachedRows>>,
    keys: keys::KeyCache,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(store: Store, source: KeySource) -> Signer {
        Signer::with_row_ttl(store, source, ROW_TTL)
    }

    /// [`Signer::new`] with another row cache lifetime (tests; [`ROW_TTL`] otherwise).
    pub fn with_row_ttl(store: Store, source: KeySource, row_ttl: Duration) -> Signer {
        Signer {
            inner: Arc::new(Inner {
                store,
                source,
                row_ttl,
                rows: Mutex::new(HashMap::new()),
                keys: keys::KeyCache::default(),
            }),
        }
    }

    /// Signs `message` (header section, blank line, body; CRLF line ends) with every enabled
    /// key of `from_domain`, the domain of its From address (`d=`). The CPU work (body
    /// hash, RSA) and key file reads run on tokio's blocking pool, on a copy of the message.
    ///
    /// A domain without keys, or whose keys all fail, is not an error: [`Signed::unsigned`]
    /// says so and the caller decides (log a warning and queue it unsigned).
    pub async fn sign(&self, from_domain: &str, message: &[u8]) -> Result<Signed, DkimError> {
        if !headers::has_from(message) {
            return Err(DkimError::NoFrom);
        }
        let domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let rows = self.rows(&domain).await?;
        if rows.is_empty() {
            tracing::debug!(%domain, "no enabled DKIM key: message left unsigned");
            return Ok(Signed {
                header: Vec::new(),
                signatures: Vec::new(),
                skipped: Vec::new(),
            });
        }
        let inner = self.inner.clone();
        let message = message.to_vec();
        tokio::task::spawn_blocking(move || sign_with(&inner, &domain, &rows, &message))
            .await
            .map_err(DkimError::Task)
    }

    /// The enabled rows of `domain`, from the cache while fresh.
    async fn rows(&self, domain: &str) -> Result<Arc<[DkimKeyRow]>, DkimError> {
        {
            let cache = self
                .inner
                .rows
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, rows)) = cache.get(domain) {
                if at.elapsed() < self.inner.row_ttl {
                    return Ok(rows.clone());
                }
            }
        }
        let mut rows: Vec<DkimKeyRow> = self
            .inner
            .store
            .dkim_keys(domain)
            .await
            .map_err(|source| DkimError::Store {
                domain: domain.to_string(),
                source,
            })?
            .into_iter()
            .filter(|row| row.enabled)
            .collect();
        // RSA first: its signature ends up on top.
        rows.sort_by_key(|row| (!row.algorithm.starts_with("rsa"), row.selector.clone()));
        let rows: Arc<[DkimKeyRow]> = rows.into();
        let mut cache = self
            .inner
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= ROW_CACHE_MAX && !cache.contains_key(domain) {
            let ttl = self.inner.row_ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= ROW_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(domain.to_string(), (Instant::now(), rows.clone()));
        Ok(rows)
    }
}

/// The blocking part of [`Signer::sign`]: one signature per usable key.
fn sign_with(inner: &Inner, domain: &str, rows: &[DkimKeyRow], message: &[u8]) -> Signed {
    let list = headers::signed_header_list(message);
    let mut out = Signed {
        header: Vec::new(),
        signatures: Vec::new(),
        skipped: Vec::new(),
    };
    for row in rows {
        let signed = inner.keys.key_for(&inner.source, row).and_then(|key| {
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(&row.selector)
                .headers(list.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message)
                .map_err(KeyError::Sign)
        });
        match signed {
            Ok(signature) => {
                signature.write_header(&mut out.header);
                out.signatures.push(Signature {
                    selector: row.selector.clone(),
                    algorithm: keys::algorithm_name(signature.a),
                });
            }
            Err(error) => {
                tracing::warn!(
                    %domain,
                    selector = %row.selector,
                    %error,
                    "DKIM key skipped"
                );
                out.skipped.push(SkippedKey {
                    selector: row.selector.clone(),
                    error,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
