//! Where `postbay apply` keeps DKIM private keys without a cluster: one PEM file per selector
//! under the data folder, `dkim/<domain>/<selector>.pem`, mode 0600. The row refers to it as
//! `file:PATH`. Re-applying reuses the file, so a key is generated once, not on every run.

use std::io::Write;
use std::path::{Path, PathBuf};

use postbay_api::DkimKeySpec;

use crate::dkim::KeyMaterial;
use crate::{DkimPrivateKey, Error, Result};

/// The key folder of one data folder.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    dir: PathBuf,
}

/// Where a key came from, for the line `postbay apply` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The Secret the DkimKey names.
    Supplied,
    /// The file of an earlier run.
    Kept,
    /// Made now.
    Generated,
}

impl KeyFiles {
    pub fn new(data_dir: &Path) -> KeyFiles {
        KeyFiles {
            dir: data_dir.join("dkim"),
        }
    }

    pub fn path(&self, domain: &str, selector: &str) -> PathBuf {
        self.dir.join(domain).join(format!("{selector}.pem"))
    }

    /// The key for `spec`: the `supplied` PEM if any, else the file's key when it is of the
    /// spec's algorithm, else a fresh key. Afterwards the file holds it.
    pub fn material(
        &self,
        spec: &DkimKeySpec,
        supplied: Option<&str>,
    ) -> Result<(KeyMaterial, KeySource)> {
        let path = self.path(&spec.domain, &spec.selector);
        let on_disk = std::fs::read_to_string(&path).ok();
        let (key, source) = match supplied {
            Some(pem) => (
                DkimPrivateKey::from_pem(pem).map_err(Error::Key)?,
                KeySource::Supplied,
            ),
            None => match on_disk
                .as_deref()
                .and_then(|pem| DkimPrivateKey::from_pem(pem).ok())
                .filter(|key| key.algorithm() == spec.algorithm)
            {
                Some(key) => (key, KeySource::Kept),
                None => (
                    DkimPrivateKey::generate(spec.algorithm).map_err(Error::Key)?,
                    KeySource::Generated,
                ),
            },
        };
        let pem = key.to_pem().map_err(Error::Key)?;
        if on_disk.as_deref() != Some(pem.as_str()) && source != KeySource::Kept {
            write_private(&path, &pem)?;
        }
        let absolute = std::path::absolute(&path).map_err(io(&path))?;
        Ok((
            KeyMaterial {
                key,
                private_key_ref: format!("file:{}", absolute.display()),
            },
            source,
        ))
    }
}

/// Writes `pem` readable by its owner only, replacing the file atomically.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    let dir = path.parent().expect("key paths have a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(pem.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

#[cfg(test)]
mod tests {
    use postbay_api::DkimAlgorithm;

    use super::*;

    fn spec(algorithm: DkimAlgorithm) -> DkimKeySpec {
        DkimKeySpec {
            domain: "example.test".into(),
            selector: "s1".into(),
            algorithm,
            secret_ref: None,
        }
    }

    #[test]
    fn generates_once_then_keeps_or_takes_the_supplied_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path());
        let (first, source) = files
            .material(&spec(DkimAlgorithm::Ed25519Sha256), None)
            .unwrap();
        assert_eq!(source, KeySource::Generated);
        let path = files.path("example.test", "s1");
        assert_eq!(first.private_key_ref, format!("file:{}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = files
            .material(&spec(DkimAlgorithm::Ed25519Sha256), None)
            .unwrap();
        assert_eq!(source, KeySource::Kept);
        assert_eq!(
            again.key.public_key_base64().unwrap(),
            first.key.public_key_base64().unwrap()
        );

        let supplied = DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap();
        let pem = supplied.to_pem().unwrap();
        let (given, source) = files
            .material(&spec(DkimAlgorithm::Ed25519Sha256), Some(&pem))
            .unwrap();
        assert_eq!(source, KeySource::Supplied);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        assert_eq!(
            given.key.public_key_base64().unwrap(),
            supplied.public_key_base64().unwrap()
        );
    }
}
