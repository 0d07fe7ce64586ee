//! Noticing when PEM files change on disk.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory and
//! swapping the `..data` symlink, so files are stat'ed through symlinks and the
//! resolved target is part of the fingerprint. A changed fingerprint only triggers
//! a rebuild when the content hash differs too.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::ServerConfig;

use super::{material, TlsError};

/// Where the certificate chain and key are read from.
#[derive(Debug, Clone)]
pub(super) struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PemFiles {
    /// `cert_path` may be a file or a directory holding `tls.crt`/`tls.key` (a
    /// mounted kubernetes.io/tls Secret). Without `key_path` the key is taken from
    /// the directory's `tls.key`, or else from the certificate file itself.
    pub fn resolve(cert_path: &Path, key_path: Option<&Path>) -> Self {
        if cert_path.is_dir() {
            Self {
                cert: cert_path.join("tls.crt"),
                key: key_path.map_or_else(|| cert_path.join("tls.key"), Path::to_owned),
            }
        } else {
            Self {
                cert: cert_path.to_owned(),
                key: key_path.unwrap_or(cert_path).to_owned(),
            }
        }
    }

    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &Path| {
            fs::read(path).map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    fn origin(&self) -> String {
        if self.cert == self.key {
            self.cert.display().to_string()
        } else {
            format!("{} + {}", self.cert.display(), self.key.display())
        }
    }
}

/// What a cheap `stat` tells about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    target: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?; // follows symlinks
        Ok(Self {
            target: fs::canonicalize(path)?,
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

type Stamp = (FileStamp, FileStamp);

fn stamp(files: &PemFiles) -> Result<Stamp, TlsError> {
    let of = |path: &Path| {
        FileStamp::of(path).map_err(|source| TlsError::Io {
            path: path.to_owned(),
            source,
        })
    };
    Ok((of(&files.cert)?, of(&files.key)?))
}

fn content_hash(cert: &[u8], key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    (cert, key).hash(&mut h);
    h.finish()
}

/// The PEM files plus what was last seen and loaded from them.
#[derive(Debug)]
pub(super) struct Watched {
    files: PemFiles,
    seen: Option<Stamp>,
    loaded: u64,
}

impl Watched {
    /// Loads the files for the first time.
    pub fn load(files: PemFiles) -> Result<(Self, Arc<ServerConfig>), TlsError> {
        // Stamp before reading: a change racing with the read shows up next poll.
        let seen = stamp(&files)?;
        let (cert, key) = files.read()?;
        let config = material::server_config(&cert, &key, &files.origin())?;
        let watched = Self {
            files,
            seen: Some(seen),
            loaded: content_hash(&cert, &key),
        };
        Ok((watched, config))
    }

    pub fn files(&self) -> &PemFiles {
        &self.files
    }

    /// Returns a new configuration if the files changed (always, with `force`).
    /// Broken content is reported once and not retried until the files change again.
    pub fn check(&mut self, force: bool) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let now = stamp(&self.files)?;
        if !force && self.seen.as_ref() == Some(&now) {
            return Ok(None);
        }
        let (cert, key) = self.files.read()?;
        self.seen = Some(now);
        let hash = content_hash(&cert, &key);
        if !force && hash == self.loaded {
            return Ok(None);
        }
        let config = material::server_config(&cert, &key, &self.files.origin())?;
        self.loaded = hash;
        Ok(Some(config))
    }
}
