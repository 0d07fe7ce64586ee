//! Self-signed certificates for development and first start, optionally persisted
//! so that clients which pinned the certificate keep working after a restart.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::TlsError;

pub(super) const CERT_FILE: &str = "cert.pem";
pub(super) const KEY_FILE: &str = "key.pem";

/// PEM certificate and key for `names`, reused from `dir` when both files exist.
///
/// Processes started together on one data folder (a first `postbay smtp` and `postbay
/// imap`) take turns under a lock on `dir/.lock`, so they agree on one pair instead of
/// interleaving their writes into a key that does not match its certificate.
pub(super) fn obtain(names: &[String], dir: Option<&Path>) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let _lock = dir.map(lock).transpose()?;
    if let Some(dir) = dir {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if cert_path.is_file() && key_path.is_file() {
            tracing::info!(dir = %dir.display(), "reusing persisted self-signed certificate");
            return Ok((read(&cert_path)?, read(&key_path)?));
        }
    }
    let names = san_list(names);
    let (cert, key) = generate(&names)?;
    tracing::warn!(?names, "using a generated self-signed TLS certificate");
    if let Some(dir) = dir {
        persist(dir, cert.as_bytes(), key.as_bytes())?;
    }
    Ok((cert.into_bytes(), key.into_bytes()))
}

/// An exclusive lock on `dir/.lock`, released when the file is dropped.
fn lock(dir: &Path) -> Result<fs::File, TlsError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// The configured names (default `localhost`) plus 127.0.0.1 for local testing.
fn san_list(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = if names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        names.to_vec()
    };
    if !out.iter().any(|n| n == "127.0.0.1") {
        out.push("127.0.0.1".to_owned());
    }
    out
}

/// Generates an ECDSA P-256 key and a certificate with `names` as SANs (IP
/// literals become IP SANs) and the first name as CN.
fn generate(names: &[String]) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    params.distinguished_name = dn;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes key then certificate, each atomically, so a crash never leaves a torn pair
/// that would be reused (a lone key is regenerated on the next start).
fn persist(dir: &Path, cert: &[u8], key: &[u8]) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_atomically(&dir.join(KEY_FILE), key, 0o600)?;
    write_atomically(&dir.join(CERT_FILE), cert, 0o644)?;
    tracing::info!(dir = %dir.display(), "persisted self-signed certificate");
    Ok(())
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    // A stale temp file may carry looser permissions; start from scratch.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let mut file = open_with_mode(&tmp, mode).map_err(io_err(&tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(unix)]
fn open_with_mode(path: &Path, mode: u32) -> io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed or (never) widened the mode; make it exact.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_with_mode(path: &Path, _mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError {
    let path: PathBuf = path.to_owned();
    move |source| TlsError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_defaults() {
        assert_eq!(san_list(&[]), ["localhost", "127.0.0.1"]);
        let given = ["mail.example.org".to_owned(), "127.0.0.1".to_owned()];
        assert_eq!(san_list(&given), given);
    }

    #[cfg(unix)]
    #[test]
    fn persisted_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nested");
        obtain(&[], Some(&target)).unwrap();
        let mode = |f: &str| fs::metadata(target.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_FILE), 0o644);
        assert!(!target.join("key.pem.tmp").exists());
    }
}
